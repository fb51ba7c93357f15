"""ssl-derm: self-supervised pretraining for dermatology images."""

__version__ = "0.1.0"

from ssl_derm.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
