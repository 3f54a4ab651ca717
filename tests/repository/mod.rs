mod ebs;
mod cli;
mod defects;
