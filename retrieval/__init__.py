"""Lookalike retrieval: catalogues, backbones, embedders, cached features,
Annoy index, search, evaluation. Import the modules you need (importing this
package alone loads no model library)."""
