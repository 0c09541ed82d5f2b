-- The admin JWT signing secret no longer lives in the database (read access to it was enough to mint admin
-- tokens): it comes from JWT_SECRET, is derived from MASTER_KEY, or is kept in a 0600 file under DATA_DIR.
-- Tokens signed with the old secret stop working; admins log in again.
DELETE FROM "instance_secrets" WHERE "name" = 'jwt_secret';
