"""Sharded models: one model split across paired nodes, computed with MLX's ring backend.

Core layer (never imports Textual, the UI, the node or the CLI). What the node side uses:

- `spec.RunnerSpec`: the JSON file a node writes for each rank it starts
  (`python -m salut_tui.shard.runner SPEC_JSON_PATH`), plus `write_ring_hostfile`.
- `protocol`: the JSON lines between a node and a runner (`Ready`, `ChunkOut`, `Stats`, `Fatal`
  from the runner; `Generate`, `Cancel`, `Shutdown` to it; only rank 0 takes requests).
- `placement.plan_placement` (pure) and `shape.model_shape` (reads config.json and safetensors
  headers): which node runs which layers, or the refusal with every node's shortfall.

What runs inside the runner process (which alone imports MLX):

- `runner`: joins the ring, loads the layers, says ready, runs the loop; `fatal` and a non-zero
  exit on any ring or MLX failure; exit at once on stdin EOF; `ringwatch` catches a lost peer
  that MLX reports only on stderr.
- `pipeline`: the pipeline adapter (rank 0 = first layers, only local weights read), the
  family's own tensor split, and the token broadcast that keeps every rank's batch identical.
- `session` + `orders`: the SPMD loop (mlx-lm's BatchGenerator on every rank, orders from
  rank 0 shared about every 50 ms while busy), rank 0's text streaming with the engine's parts.

Rules for the node side: read a runner's stdout continuously (a full pipe stalls the whole
ring); send `shutdown` to rank 0 (it takes every rank down; a rank > 0 told alone exits after
2 s); treat `fatal` or any exit as the end of the instance on every node; a rank that never gets
`ready` must be killed by the node's watchdog (alone, MLX's ring init blocks for minutes).
"""
