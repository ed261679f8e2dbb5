"""`python -m distillkit COMMAND ...`: the same as the `distillkit` console command."""

from distillkit.commands import main

if __name__ == "__main__":
    main()
