"""Sharded models: one model split across paired nodes, computed with MLX's ring backend.

Core layer (no Textual, no UI, no node): the runner subprocess that owns MLX for one sharded
instance on one node (`runner`), the pipeline adapter for families mlx-lm cannot pipeline
(`pipeline`), the pure placement decision (`placement`), and the typed contracts the node side
uses to start and talk to a runner (`spec`, `protocol`).
"""
