"""Shared fixtures. ``tiny_corpus``: a real built corpus (espeak speech, warped photos), small enough
to build in seconds once per test session; any test may read it (never write into it)."""

import dataclasses

import pytest

from minitalker.data.synthetic import CorpusConfig, build_corpus, load_corpus


def tiny_config(**changes) -> CorpusConfig:
    """6 sentences (4 train, 1 val, 1 test), all three faces, mirrored training faces, 32 px crops;
    2 of the 4 training clips have frames (with the default seed)."""
    return dataclasses.replace(CorpusConfig.fast(), **{"name": "tiny", "image_size": 32, "n_sentences": 6, **changes})


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The tiny corpus, built in its cache folder ``<tmp>/cache/corpus-tiny-<hash>``."""
    cfg = tiny_config()
    root = build_corpus(cfg, tmp_path_factory.mktemp("cache") / cfg.folder_name(), progress=False, workers=1)
    return load_corpus(cfg, root, build_if_missing=False)
