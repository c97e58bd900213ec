"""One module per screen; each is a Textual mode of `SalutApp` (see app.py)."""
