"""metarec: a recommender engine for the first recommendation.

The package is organised as the architecture reads:

- :mod:`metarec.data` -- the data model, readers, cleaning, splits and the synthetic world;
- :mod:`metarec.models` -- every scorer behind one contract (:class:`metarec.models.Scorer`);
- :mod:`metarec.evaluation` -- metrics, protocols, the harness and reports;
- :mod:`metarec.cli` -- the ``metarec`` command, a thin layer over the library.
"""

from metarec.errors import ConfigError, DataError, MetarecError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "MetarecError", "__version__"]
