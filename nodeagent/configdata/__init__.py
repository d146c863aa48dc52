"""Config data for pods from the API server: configMap, secret, downwardAPI and
projected volumes (written atomically like the kubelet's AtomicWriter) and
environment variables from configMaps and secrets.

Objects come through the `ConfigObjects` protocol (objects.py); the API
server connection implements it, tests use an in-memory one.
"""
