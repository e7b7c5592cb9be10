from django.urls import path

from catalog import views

urlpatterns = [
    path("<int:pk>/", views.book),
    path("crash/", views.crash),
]
