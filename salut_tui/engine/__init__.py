"""The MLX engine: one thread owns MLX; the asyncio side talks to it through `engine.Engine`.

Modules: `engine` (async facade), `worker` (the MLX thread), `loader` (model loading with
progress), `prompt` (chat template / raw prompt to token ids), `sampling` (per-request samplers),
`stops` (stop strings, pure), `registry` (model id to directory), `memory` (fit checks),
`types` (request and chunk values). Importing the package itself loads no MLX.
"""
