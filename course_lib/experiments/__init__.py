"""The experiments behind each chapter's claims, built on the verified core (course_lib)."""
