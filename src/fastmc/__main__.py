"""``python -m fastmc``: the command line (what ``torchrun ... -m fastmc train`` runs)."""

from fastmc.cli import main

if __name__ == "__main__":
    main()
