"""WSGI config for the bookshelf project, as `django-admin startproject` writes it (plus the README's lines)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookshelf.settings")

application = get_wsgi_application()

if os.environ.get("OBSBOX_IN_APP") == "1":
    import obsbox

    obsbox.configure(service_name="bookshelf")
    obsbox.instrument(application)  # the README's line, its result not used
