"""The offline training photo set behind ``fastcolor data``.

``recipe`` gathers photos from Debian and PyPI packages (with a manifest of
sources and licences); ``rcc`` reads the Qt resource archives some of them
come in.
"""
