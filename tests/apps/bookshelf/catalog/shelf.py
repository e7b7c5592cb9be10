"""Views that use Django's ORM (served only when BOOKSHELF_DATABASE names a database)."""
from django.db import IntegrityError, transaction
from django.http import Http404, JsonResponse

from catalog.models import Shelf


def lookup(request, pk):
    book = Shelf.objects.filter(pk=pk).first()
    if book is None:
        raise Http404("no such book")
    return JsonResponse({"pk": book.pk, "title": book.title, "on_shelf": Shelf.objects.count()})


# What a title may hold that must never leave the process (the ORM passes it as a parameter).
SECRET = "hunter2-s3cret-title"


async def alookup(request, pk):
    """lookup() through Django's async ORM (served over ASGI)."""
    book = await Shelf.objects.filter(pk=pk).afirst()
    if book is None:
        raise Http404("no such book")
    return JsonResponse({"pk": book.pk, "title": book.title})


def add(request, n):
    """Add book `n`; a second book `n` violates the unique constraint (409)."""
    title = f"{SECRET}-{n}"
    try:
        with transaction.atomic():
            book = Shelf.objects.create(title=title, copies=1)
    except IntegrityError:
        return JsonResponse({"error": "exists"}, status=409)
    return JsonResponse({"pk": book.pk}, status=201)
