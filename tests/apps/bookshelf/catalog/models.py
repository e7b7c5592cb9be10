from django.db import models


class Shelf(models.Model):
    """A book on the shelf, kept in the database (the /shelf/ views)."""

    title = models.CharField(max_length=200, unique=True)
    copies = models.IntegerField(default=0)
