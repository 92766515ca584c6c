"""``python -m microlad`` (also what ``torchrun -m microlad`` runs)."""
from microlad.cli import main

if __name__ == "__main__":
    main()
