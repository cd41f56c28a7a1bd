"""``torchrun --standalone --nproc_per_node 2 tests/tiny_face_training.py CORPUS OUT``: the face agent's
training, data-parallel on CPU (gloo); tests/test_face_agent.py compares it with one process."""

import sys

import torch

from minitalker.data.corpus import Corpus
from minitalker.train.faces import train_faces
from test_face_agent import tiny_run

if __name__ == "__main__":
    torch.set_num_threads(1)
    train_faces(out=sys.argv[2], corpus=Corpus(sys.argv[1]), run=tiny_run(steps=3), resume=False)
