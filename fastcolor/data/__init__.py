"""Data: reading and writing images, training datasets, and the offline photo set.

* ``fastcolor.data.images``: the one image loader (anything to uint8 RGB plus
  alpha), image search and atomic image writes.
* ``fastcolor.data.transforms``: the one resize, fitting within a size, centre crops.
* ``fastcolor.data.dataset``: ``ImageFolder``, random crops for training.
* ``fastcolor.data.photoset``: the recipe behind ``fastcolor data``, which
  builds a training photo set from package registries.
"""
