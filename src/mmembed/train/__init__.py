"""Training recipes: the default mmembed-mini model (:mod:`mmembed.train.mini`) and its reusable
contrastive trainer (:func:`mmembed.train.mini.train_contrastive`)."""
