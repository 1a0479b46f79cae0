"miniai: a small, fast, fastai-style training library for PyTorch. `miniai.all` holds every public name."

def __getattr__(name:str):
    "`miniai.__version__`, read when asked (importing miniai stays free): the installed package's version, from settings.ini."
    if name != '__version__': raise AttributeError(f"module 'miniai' has no attribute {name!r}")
    from importlib.metadata import version, PackageNotFoundError
    try: return version('miniai')
    except PackageNotFoundError:  # a checkout on sys.path but not installed: settings.ini is the one source
        from configparser import ConfigParser
        from pathlib import Path
        cfg = ConfigParser(delimiters=['=']); cfg.read(Path(__file__).parent.parent/'settings.ini', encoding='utf-8')
        return cfg.get('DEFAULT', 'version', fallback='unknown')
