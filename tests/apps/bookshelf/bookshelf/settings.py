"""Settings of the bookshelf test project.

No database unless BOOKSHELF_DATABASE names one (`sqlite:///path/to/file` or `postgresql://user@host:port/name`):
only the /shelf/ views use it.
"""
import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["catalog"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bookshelf.urls"
WSGI_APPLICATION = "bookshelf.wsgi.application"
ASGI_APPLICATION = "bookshelf.asgi.application"
DATABASES: dict = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

_database = urlsplit(os.environ.get("BOOKSHELF_DATABASE", ""))
if _database.scheme == "sqlite":
    DATABASES["default"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": _database.path}
elif _database.scheme == "postgresql":
    DATABASES["default"] = {"ENGINE": "django.db.backends.postgresql", "NAME": _database.path.lstrip("/"),
                            "USER": _database.username or "", "HOST": _database.hostname or "",
                            "PORT": str(_database.port or "")}
