"""The domain layer: HA pair rules of the UCM6300 remote-DR guide, as plain functions.

Standard library only -- no Flask, Celery or SQLAlchemy -- so every rule can be tested and
replayed without a database, a broker or an app. Import the module that holds a rule
(``service.domain.claims``, ``service.domain.transition``, ...): this package re-exports nothing.
"""
