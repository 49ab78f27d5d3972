"""configs/default.yaml is InpaintConfig's defaults, as `write_defaults_yaml` writes them."""
import dataclasses

from jax_inpaint.inversion.config import CONFIG_DIRS, InpaintConfig, find_preset, load_config, write_defaults_yaml


def test_default_yaml_is_generated_from_the_config(tmp_path):
    shipped = CONFIG_DIRS[0] / "default.yaml"
    assert find_preset("default") == shipped
    write_defaults_yaml(tmp_path / "default.yaml")
    assert shipped.read_text() == (tmp_path / "default.yaml").read_text(), \
        "configs/default.yaml is stale: regenerate it with `python -m jax_inpaint.inversion.config`"


def test_loading_the_default_preset_gives_the_defaults():
    assert load_config("default") == InpaintConfig() == load_config(None)
    # every field is in the file (none left to the dataclass silently)
    text = (CONFIG_DIRS[0] / "default.yaml").read_text()
    for f in dataclasses.fields(InpaintConfig):
        assert f"\n{f.name}: " in text, f.name
