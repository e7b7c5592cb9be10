from catalog import views
from django.urls import include, path

urlpatterns = [
    path("", views.index),
    path("books/", include("catalog.urls")),
]
