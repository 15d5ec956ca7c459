"""``python -m dreamgym.train DATA --out RUN`` — the same as ``dreamgym train``; torchrun-ready:

    torchrun --nproc_per_node=2 -m dreamgym.train data/carracing --out runs/carracing
"""

from dreamgym.cli import main

if __name__ == "__main__":
    import sys

    main(["train", *sys.argv[1:]])
