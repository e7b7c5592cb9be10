"""The obsbox logger: placeholder until the logging integration lands."""

from loguru import logger

__all__ = ["logger"]
