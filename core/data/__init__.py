"""Datasets: the registry (`registry`), file formats (`formats`) and tokenisation with the label mask (`encode`)."""
