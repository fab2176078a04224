"""Data sets the book trains and evaluates on, generated or shipped (nothing is
downloaded).

One module per data set, imported on demand so that ``import attnbook`` stays light:

- ``attnbook.datasets.dates``: human-written dates in many formats and languages, to
  translate to ISO 8601.
- ``attnbook.datasets.digits``: scikit-learn's bundled 8x8 digits, cut into patches
  for a Vision Transformer.
- ``attnbook.datasets.corpus``: the small corpus written for the book's
  semantic-search section.
"""
