"""Maintainer tools: run by the Makefile, never installed with course_lib."""
