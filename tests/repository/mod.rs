mod cli;
mod defects;
mod ebs;
