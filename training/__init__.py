"""Development tools that do not ship with the app: the house model's trainer, scene generator,
adherence rules, evaluation and export (`python -m training.house …`). The bundled app and the
installed packages carry the house model's weights (`assets/house`), not this code."""
