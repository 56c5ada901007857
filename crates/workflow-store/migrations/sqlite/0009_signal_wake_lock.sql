-- PostgreSQL's wake trigger now locks the execution a signal is for (see its 0009). SQLite
-- runs one write transaction at a time, so a signal and a park cannot interleave there: this
-- migration exists so both stores list the same versions, and changes nothing.
select 1;
