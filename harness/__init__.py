"""t2-harness: repeated-sampling evaluation, unbiased pass@k, inference cost, T² scaling laws.

Notebook API (:mod:`harness.api`): ``run = harness.evaluate(task="gsm8k", model="smollm2-135m",
n=64)``, then ``run.passk()``, ``run.cost()``, ``run.scores()``; ``harness.open_run(path)`` for an
existing run. Imported on first use, so ``import harness`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["evaluate", "open_run", "Run"]


def __getattr__(name: str):
    if name in __all__:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
