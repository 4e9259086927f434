"""`python -m retrieval report`: every embedding of a catalogue compared in
one run (retrieval and kNN metrics, cost, plots, 2-D maps, example queries),
written to a folder with REPORT.md. command.py is the entry point, build.py
measures, writer.py writes, view.py reads a report back for the app."""
