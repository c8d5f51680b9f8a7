"""Glue between the Snakemake workflow and the libraries (models, metrics, corpora)."""
