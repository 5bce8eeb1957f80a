"""The random seeds on which the tests check the chapters' claims.

The notebooks run with seeds 0-2. A claim the course states must also hold for seeds the
notebooks never use, so the claim tests draw theirs from a separate range, and the prose
quotes only what holds for all of them ("with every random seed we tried"). Ten seeds per
claim; the few claims whose runs take more than a few seconds each use the first six,
to keep the whole test command within its budget, and are marked slow.
"""

CLAIM_SEEDS = tuple(range(1001, 1011))
SLOW_CLAIM_SEEDS = CLAIM_SEEDS[:6]
