"Package metadata comes from settings.ini (the single source); this file only translates it."
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
licenses = {'apache2': 'Apache-2.0', 'mit': 'MIT', 'gpl3': 'GPL-3.0-or-later', 'bsd3': 'BSD-3-Clause'}
readme = here/'README.md'

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else '',
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'], keywords=cfg['keywords'].split(),
    license=licenses.get(cfg['license'], cfg['license']),
    python_requires='>=' + cfg['min_python'],
    packages=setuptools.find_packages(include=['miniai', 'miniai.*']),
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split(),
                    'tensorboard': cfg['tensorboard_requirements'].split()},
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"]},
    package_data={'miniai': ['py.typed']},  # PEP 561: the package's annotations are for type checkers too
    include_package_data=True, zip_safe=False,
)
