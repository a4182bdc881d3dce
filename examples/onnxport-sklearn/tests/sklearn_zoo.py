"""Factories for the CLI tests: fitted models with fixed seeds, as `(model, X)`.

Imported by `onnxport convert sklearn_zoo:NAME` with this directory on PYTHONPATH.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def classification_data():
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5,
                               n_classes=3, random_state=0)
    return X.astype(np.float32), y


def logistic_pipeline():
    X, y = classification_data()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(X, y), X[:4]


def forest_classifier():
    X, y = classification_data()
    return RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0).fit(X, y)


def boosting_regressor():
    X, y = make_regression(n_samples=300, n_features=6, noise=0.1, random_state=0)
    model = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0)
    return model.fit(X, y), X[:2]
