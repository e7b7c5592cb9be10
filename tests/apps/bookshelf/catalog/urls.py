from django.urls import path

from catalog import shelf, views

urlpatterns = [
    path("<int:pk>/", views.book),
    path("crash/", views.crash),
    path("shelf/<int:pk>/", shelf.lookup),
    path("shelf/async/<int:pk>/", shelf.alookup),
    path("shelf/add/<int:n>/", shelf.add),
]
