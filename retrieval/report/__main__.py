"""`python -m retrieval.report ...`: the same as `python -m retrieval report ...`."""
import sys

from retrieval.cli.main import main

sys.exit(main(["report", *sys.argv[1:]]))
