"""EXPNAME (the original's data name convention, its sign bug fixed) and metadata.json."""
import json

import numpy as np
import pytest

from video_prediction_tools.data_preprocess.domain import find_domain
from video_prediction_tools.data_preprocess.metadata import (corner_code, expname, metadata_dict, read_metadata,
                                                             write_or_check_metadata)
from video_prediction_tools.utils.errors import UserError

ERA5_LAT = np.linspace(90.0, -90.0, 601)
ERA5_LON = np.arange(1200) * 0.3


@pytest.mark.parametrize("lat, lon, code", [
    (38.4, 0.0, "3840N0000E"),
    (5.5, 6.36, "550N0636E"),
    (-10.2, 350.1, "1020S0990W"),
    (-10.2, -9.9, "1020S0990W"),
    (51.0, 100.5, "5100N10050E"),
    (-33.9, -70.5, "3390S7050W"),
])
def test_corner_codes_of_the_spec(lat, lon, code):
    assert corner_code(lat, lon) == code


def test_gmd_expname():
    domain = find_domain(ERA5_LAT, ERA5_LON, (38.4, 0.0), (56, 92))
    assert (expname(list(range(2007, 2020)), list(range(1, 13)), domain, ["2t", "tcc", "t_850"])
            == "era5-Y2007-2019M01to12-92x56-3840N0000E-2t_tcc_t_850")


def test_expname_uses_the_nearest_grid_corner():
    domain = find_domain(ERA5_LAT, ERA5_LON, (50.91, 6.36), (10, 12))
    assert expname([2017], [3, 1], domain, ["2t", "2t"]) == "era5-Y2017-2017M01to03-12x10-5100N0630E-2t_2t"


def test_southern_western_crossing_domain_metadata_keeps_sign_and_data_order(tmp_path):
    domain = find_domain(ERA5_LAT, ERA5_LON, (-10.2, 350.1), (4, 40))
    name = expname([2017, 2018], [1, 2], domain, ["2t", "tcc", "t_850"])
    assert name == "era5-Y2017-2018M01to02-40x4-1020S0990W-2t_tcc_t_850"
    metadata = metadata_dict(name, tmp_path, domain, ["2t", "tcc", "t_850"])
    assert list(metadata) == ["expname", "expdir", "sw_corner_frame", "coordinates", "frame_size", "variables"]
    assert metadata["sw_corner_frame"] == {"lat": -10.2, "lon": -9.9}
    assert metadata["coordinates"]["lat"] == [-9.3, -9.6, -9.9, -10.2]
    lon = metadata["coordinates"]["lon"]
    assert lon[:2] == [350.1, 350.4] and lon[32:35] == [359.7, 0.0, 0.3] and lon[-1] == 1.8
    assert metadata["frame_size"] == {"nx": 40, "ny": 4}
    assert metadata["variables"] == [{"var1": "2t"}, {"var2": "tcc"}, {"var3": "t_850"}]
    json.dumps(metadata)  # JSON-able (plain floats and ints)


def test_write_check_and_overwrite_metadata(tmp_path):
    domain = find_domain(ERA5_LAT, ERA5_LON, (38.4, 0.0), (56, 92))
    name = expname([2017], [1], domain, ["2t"])
    metadata = metadata_dict(name, tmp_path, domain, ["2t"])
    assert write_or_check_metadata(tmp_path / name, metadata) == "new"
    moved = dict(metadata, expdir="/elsewhere")
    assert write_or_check_metadata(tmp_path / name, moved) == "same"
    other = metadata_dict(name, tmp_path, find_domain(ERA5_LAT, ERA5_LON, (38.7, 0.0), (56, 92)), ["2t"])
    with pytest.raises(UserError, match="differs in coordinates, sw_corner_frame"):
        write_or_check_metadata(tmp_path / name, other)
    assert write_or_check_metadata(tmp_path / name, other, overwrite=True) == "replaced"
    read_back = read_metadata(tmp_path / name)
    assert read_back["sw_corner_frame"] == {"lat": 38.7, "lon": 0.0}
    assert read_back["variable_list"] == ["2t"]


def test_read_metadata_errors(tmp_path):
    with pytest.raises(UserError, match="metadata file not found"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text('{"expname": "x"}')
    with pytest.raises(UserError, match="lacks the key"):
        read_metadata(tmp_path)
