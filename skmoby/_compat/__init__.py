"""Version-gated fixes for the libraries skmoby works with, kept in one place."""
