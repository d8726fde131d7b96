"""Django models over the ``authors`` and ``posts`` tables findings_apps.py creates (not managed here)."""

from django.db import models


class Author(models.Model):
    name = models.TextField()

    class Meta:
        app_label = "djangoshop"
        db_table = "authors"
        managed = False


class Post(models.Model):
    title = models.TextField()
    author = models.ForeignKey(Author, on_delete=models.DO_NOTHING, db_column="author_id")

    class Meta:
        app_label = "djangoshop"
        db_table = "posts"
        managed = False
