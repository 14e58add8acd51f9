"""The zoo: model files found, validated and listed (:mod:`.catalog`), and the papers' reported figures
(:mod:`.papers`). Reading it never imports torch until an entry is validated or built."""

from emobench.zoo.catalog import ZooEntry, extra_zoo_dirs, get_entry, get_zoo, list_models, zoo_listing

__all__ = ["ZooEntry", "extra_zoo_dirs", "get_entry", "get_zoo", "list_models", "zoo_listing"]
