-- Defaults of a fresh node: the enterprise parameters and the standard phone security
-- profiles. Inserted once; administrators change them afterwards.

INSERT INTO processconfig (paramname, paramvalue, updated_at) VALUES
    ('ClusterSecurityMode', '0', 0),
    ('CapfPhonePort', '3804', 0),
    ('CapfOperationExpiresInDays', '10', 0),
    ('LscValidityDays', '1826', 0),
    ('TvsPort', '2445', 0),
    ('TftpPort', '69', 0),
    ('HttpPort', '6970', 0);

INSERT INTO securityprofile (name, description, device_security_mode, tftp_encrypted_config,
                             auth_mode, key_order, rsa_bits, ec_curve, created_at, updated_at) VALUES
    ('Standard Non-Secure Profile', 'Non-secure: no LSC needed, plain configuration',
     'non-secure', 0, 'null-string', 'rsa', 2048, 'p256', 0, 0),
    ('Standard Authenticated Profile', 'Authenticated signalling, signed configuration',
     'authenticated', 0, 'null-string', 'rsa', 2048, 'p256', 0, 0),
    ('Standard Encrypted Profile', 'Encrypted signalling and media, encrypted configuration',
     'encrypted', 1, 'null-string', 'rsa', 2048, 'p256', 0, 0);
