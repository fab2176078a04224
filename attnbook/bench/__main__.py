"""``python -m attnbook.bench [--sizes 256,1024 --quick ...]``: run the benchmark
suite (see ``--help``)."""

from .suite import main

if __name__ == "__main__":
    main()
