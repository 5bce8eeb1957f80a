"""Page helpers: showing source, the one figure style, self-check questions."""
