"""The Salut terminal UI (Textual). Nothing outside this package imports Textual."""
