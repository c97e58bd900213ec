"""Copying a model's files from a peer: the pure parts (which files, which byte ranges are still
missing, what resume state says, whether there is room, how fast it goes) apart from the I/O,
which lives in `salut_tui.cluster.pull` (receiver) and `salut_tui.cluster.model_service` (sender).
`partial` keeps the partial copies (some weight files of a model, for a sharded plan's layers)
apart from whole models.
"""
