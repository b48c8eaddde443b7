"""`python -m deeprec ...` (also what `torchrun -m deeprec train ...` runs)."""

from deeprec.cli import main

if __name__ == "__main__":
    main()
