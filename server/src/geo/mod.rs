//! Where things are: areas and the point → area rule (`boundaries`), every boundary generation in memory and the
//! tagging rule (`atlas`), reading boundary files (`boundary_files`) and the postcode directory (`postcodes`).

pub mod atlas;
pub mod boundaries;
pub mod boundary_files;
pub mod postcodes;
