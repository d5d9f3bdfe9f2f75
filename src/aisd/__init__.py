"""aisd: the AI system-design stack, runnable on one laptop.

Systems live in sub-packages (engine, rag, vector, gateway, features, experiments, planner, evals); importing
``aisd`` itself loads nothing heavy.
"""

__version__ = "0.1.0"
