"""One module per ``gate-terminal`` command, each with ``register(subparsers)`` and ``run(args)``;
heavy imports wait inside ``run`` so ``--help`` and the other commands stay quick."""
